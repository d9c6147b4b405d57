"""Static websites served from buckets (Garage: src/web/; design §11).

A bucket whose owner enabled website access (S3 PutBucketWebsite, or
``garage bucket website --allow``) is served to anyone, without signatures, by the
``[s3_web]`` server of each node: ``http://<bucket>.<root_domain>/`` or, for a bucket with
a global alias that is a domain name, ``http://<alias>/``. It reuses the S3 read path of
``garage_api`` (ranges, conditional requests, SSE-C, streamed blocks) and the bucket's CORS
rules.

- :class:`WebServer`: the HTTP handler (``serve(WebServer(garage, config.s3_web).handle,
  addr)``).
- :func:`authority_to_host`, :func:`host_to_bucket_name` and :func:`path_to_keys` (with
  :class:`WebTarget` and :class:`ImplicitRedirect`): the pure routing of a request to a
  bucket name and an object key.
- :class:`WebError` and :func:`error_page`: errors, answered as small HTML pages.

Example::

    >>> from garage_web import host_to_bucket_name, path_to_keys
    >>> host_to_bucket_name("blog.web.example.com", "web.example.com")
    'blog'
    >>> path_to_keys("/photos", "index.html")
    WebTarget(key='photos', redirect=ImplicitRedirect(key='photos/index.html', location='/photos/'))
"""

from ._errors import ALLOWED_METHODS as ALLOWED_METHODS
from ._errors import WebError as WebError
from ._errors import error_page as error_page
from ._routing import ImplicitRedirect as ImplicitRedirect
from ._routing import WebTarget as WebTarget
from ._routing import authority_to_host as authority_to_host
from ._routing import host_to_bucket_name as host_to_bucket_name
from ._routing import path_to_keys as path_to_keys
from ._server import WebServer as WebServer

__all__ = [
    "ALLOWED_METHODS",
    "ImplicitRedirect",
    "WebError",
    "WebServer",
    "WebTarget",
    "authority_to_host",
    "error_page",
    "host_to_bucket_name",
    "path_to_keys",
]
