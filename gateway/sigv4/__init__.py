"""AWS Signature Version 4, in one leaf package: the primitives (signing keys, canonical requests),
query presigning for S3 URLs, and header signing for proxy reads and the ElastiCache IAM token."""
