"""The inline session policy that binds an S3 dataset's URLs to the company's networks.

A URL signed with the credentials of an ``sts:AssumeRole`` session is checked by S3 against that
session's permissions when it is *used*, so a session policy that allows ``s3:GetObject`` on the
dataset's prefix only from given source addresses (``aws:SourceIp``) or through given VPC
endpoints (``aws:SourceVpce``) makes a leaked URL useless elsewhere. Either statement suffices: a
request through an endpoint carries no ``aws:SourceIp``, one from the internet no ``aws:SourceVpce``.

Built when the policy file loads, minified, and refused above STS's 2,048-character limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from gateway.config.types import Network

MAX_SESSION_POLICY = 2048  # plain-text characters STS accepts for an inline session policy


def object_arn(bucket: str, prefix: str, partition: str = "aws") -> str:
    """The ARN pattern of every object under ``prefix``: the only resource the session may read."""
    return f"arn:{partition}:s3:::{bucket}/{prefix}*"


def session_policy(bucket: str, prefix: str, *, source_ips: Sequence[Network], vpc_endpoints: Sequence[str],
                   partition: str = "aws") -> str:
    """The minified JSON session policy (deterministic: the same inputs give the same bytes)."""
    resource = object_arn(bucket, prefix, partition)
    statements: list[dict[str, object]] = []
    if source_ips:
        statements.append({
            "Sid": "FromSourceIps", "Effect": "Allow", "Action": "s3:GetObject", "Resource": resource,
            "Condition": {"IpAddress": {"aws:SourceIp": [str(n) for n in source_ips]}},
        })
    if vpc_endpoints:
        statements.append({
            "Sid": "ThroughVpcEndpoints", "Effect": "Allow", "Action": "s3:GetObject", "Resource": resource,
            "Condition": {"StringEquals": {"aws:SourceVpce": list(vpc_endpoints)}},
        })
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, separators=(",", ":"))
