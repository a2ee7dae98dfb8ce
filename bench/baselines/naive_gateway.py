"""Baseline (b): the gateway a team writes in an afternoon.

FastAPI; every request verifies the RS256 bearer token with PyJWT (keys from the issuer's JWKS through
PyJWKClient), checks the groups claim, and calls boto3's generate_presigned_url. No caches of its own,
no audit, no Redis. Configured by the harness through NAIVE_* environment variables.
"""

import os

import boto3
import jwt
from botocore.config import Config
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import RedirectResponse

ISSUER = os.environ["NAIVE_ISSUER"]
AUDIENCE = os.environ["NAIVE_AUDIENCE"]
GROUP = os.environ["NAIVE_GROUP"]
BUCKET = os.environ["NAIVE_BUCKET"]
PREFIX = os.environ.get("NAIVE_PREFIX", "")

app = FastAPI()
jwks = jwt.PyJWKClient(os.environ["NAIVE_JWKS_URI"])
s3 = boto3.client(
    "s3",
    region_name=os.environ.get("NAIVE_REGION", "us-west-2"),
    endpoint_url=os.environ.get("NAIVE_ENDPOINT") or None,
    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
)


@app.get("/v1/datasets/{dataset}/objects/{key:path}")
def get_object(dataset: str, key: str, request: Request):
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer "):
        raise HTTPException(401, "missing token")
    token = auth[len("Bearer "):]
    try:
        signing_key = jwks.get_signing_key_from_jwt(token)
        claims = jwt.decode(token, signing_key.key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER)
    except jwt.PyJWTError as exc:
        raise HTTPException(401, "invalid token") from exc
    if GROUP not in claims.get("groups", []):
        raise HTTPException(403, "forbidden")
    if ".." in key.split("/"):
        raise HTTPException(400, "bad key")
    url = s3.generate_presigned_url(
        "get_object", Params={"Bucket": BUCKET, "Key": PREFIX + key}, ExpiresIn=300
    )
    return RedirectResponse(url, status_code=302)
