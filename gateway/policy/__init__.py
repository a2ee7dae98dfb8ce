"""Policy: compiled rules and the deny-by-default decision."""

from gateway.policy.engine import CompiledDataset, CompiledPolicy, RuleCheck, compile_policy

__all__ = ["CompiledDataset", "CompiledPolicy", "RuleCheck", "compile_policy"]
