"""Listing a GCS dataset: one page of the JSON API's ``objects.list``, read with google-cloud-storage
(blocking: the backend calls it in a thread), with the same OAuth credentials proxy reads use.

The client is built once, on the first listing (signing never needs it). Failures become the
gateway's errors with a fixed text: Google's messages name the bucket, the project and the host.
"""

from __future__ import annotations

import threading
from typing import Any

import google.auth
import google.auth.credentials
import google.auth.exceptions
import requests
from google.api_core import exceptions as api
from google.api_core.retry import Retry

from gateway.backends import Listed, ListPage
from gateway.backends.listing import relative
from gateway.errors import BadGateway, GatewayError, NotFound, Unavailable

# The listing's own deadline: a retry budget of seconds, not google-api-core's default two minutes.
_RETRY = Retry(initial=0.5, maximum=4.0, multiplier=2.0, timeout=8.0)
_TIMEOUT = (5.0, 30.0)  # connect, read
_FIELDS = "items(name,size,etag,contentType,updated),nextPageToken"
Credentials = google.auth.credentials.Credentials


class GcsListing:
    """Pages of one bucket's objects under a prefix."""

    def __init__(self, bucket: str, endpoint: str, credentials: Credentials | None, *, problem: str | None) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        self._credentials = credentials
        self._problem = problem
        self._lock = threading.Lock()
        self._client: Any = None

    def _storage(self) -> Any:
        from google.cloud import storage

        with self._lock:
            if self._client is None:
                credentials = self._credentials
                if credentials is None:  # an HMAC signer has no OAuth credentials: the ambient ones list
                    try:
                        credentials, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
                    except google.auth.exceptions.GoogleAuthError:
                        raise Unavailable(self._problem or "no Google credentials are available to list the "
                                          "dataset's bucket") from None
                project = getattr(credentials, "project_id", None) or "-"  # objects.list names no project
                self._client = storage.Client(project=project, credentials=credentials,
                                              client_options={"api_endpoint": self.endpoint})
            return self._client

    def page(self, dataset_prefix: str, full: str, start: str | None, size: int) -> ListPage:
        try:
            blobs = self._storage().list_blobs(self.bucket, prefix=full, page_size=size, page_token=start or None,
                                               fields=_FIELDS, retry=_RETRY, timeout=_TIMEOUT)
            items = list(next(blobs.pages, []))
            token = blobs.next_page_token
        except GatewayError:
            raise
        except Exception as exc:  # google-api-core, google-auth, requests: one table below
            raise _listing_error(exc) from exc
        objects = [Listed(key, int(blob.size) if blob.size is not None else None, blob.etag, blob.content_type,
                          blob.updated.timestamp() if blob.updated is not None else None)
                   for key, blob in relative(((blob.name, blob) for blob in items), dataset_prefix)]
        return ListPage(objects, token or None)


def _listing_error(exc: Exception) -> GatewayError:
    if isinstance(exc, api.NotFound):
        return NotFound("the dataset's bucket does not exist")
    if isinstance(exc, api.Forbidden | api.Unauthorized | api.BadRequest):
        return BadGateway("the storage refused to list the dataset's bucket")
    if isinstance(exc, google.auth.exceptions.RefreshError):  # the token endpoint refused the credentials
        return BadGateway("Google refused the credentials the gateway lists the dataset's bucket with")
    if isinstance(exc, api.GoogleAPIError | google.auth.exceptions.GoogleAuthError | requests.RequestException):
        return Unavailable("the dataset's bucket could not be listed; retry shortly")
    raise exc
