"""Baseline (a), the framework limit: a bare Starlette app that answers every request with a fixed 302.

Run by the harness as ``uvicorn bench.baselines.starlette_302:app --workers 2``. The Location has the
length of a real S3 presigned URL, so the response is as large as the gateway's.
"""

from starlette.applications import Starlette
from starlette.responses import Response
from starlette.routing import Route

LOCATION = (
    "https://acme-bench.s3.us-west-2.amazonaws.com/datasets/driving/images/2024/cam_front/frame_000001.jpg"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20240101%2Fus-west-2%2Fs3"
    "%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Expires=300&X-Amz-SignedHeaders=host"
    "&X-Amz-Signature=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)
HEADERS = {"Location": LOCATION, "Cache-Control": "private, max-age=150", "Referrer-Policy": "no-referrer"}


async def redirect(request):
    return Response(status_code=302, headers=HEADERS)


app = Starlette(routes=[Route("/{path:path}", redirect, methods=["GET", "HEAD"])])
