"""Bucket website configuration (Garage: src/api/s3/website.rs; design §8.1, §10.10).

A bucket's website configuration is what ``garage_web`` serves it with: the index document
suffix appended to paths ending in ``/``, and the object answered with a 404. Garage has no
redirections, so a configuration asking for them is refused (``501``) rather than stored
and silently ignored. The three operations need the ``owner`` permission (the router says
so) and write through ``LockedHelper.update_bucket_website``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from garage_api.http import Response

from ._api import xml_response
from ._body import RequestBody
from ._errors import S3Error
from ._router import Operation
from ._xml import MAX_XML_BODY_BYTES, WebsiteConfiguration, parse_website_configuration

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._api import ReqCtx

__all__ = ["HANDLERS"]


async def get_bucket_website(ctx: ReqCtx) -> Response:
    """GetBucketWebsite: the configuration, or ``404 NoSuchWebsiteConfiguration`` (AWS's
    answer; Garage answers ``204`` with no body)."""
    _, bucket = ctx.require_bucket()
    params = bucket.params
    assert params is not None  # resolved buckets exist
    config = params.website_config.value
    if config is None:
        raise S3Error.from_code(
            "NoSuchWebsiteConfiguration", details=[("BucketName", ctx.bucket_name or "")]
        )
    return xml_response(WebsiteConfiguration(config).to_xml())


async def put_bucket_website(ctx: ReqCtx) -> Response:
    """PutBucketWebsite: checks the document (and its Content-MD5 or checksum), stores it."""
    bucket_id, _ = ctx.require_bucket()
    body = await RequestBody(ctx.request, ctx.auth).read_all(MAX_XML_BODY_BYTES)
    config = parse_website_configuration(body)
    await ctx.garage.locked_helper.update_bucket_website(bucket_id, config)
    return Response(200)


async def delete_bucket_website(ctx: ReqCtx) -> Response:
    """DeleteBucketWebsite: the bucket is no website any more (``204`` even if it was not)."""
    bucket_id, _ = ctx.require_bucket()
    await ctx.garage.locked_helper.update_bucket_website(bucket_id, None)
    return Response(204)


HANDLERS: dict[Operation, Callable[[ReqCtx], Awaitable[Response]]] = {
    Operation.GET_BUCKET_WEBSITE: get_bucket_website,
    Operation.PUT_BUCKET_WEBSITE: put_bucket_website,
    Operation.DELETE_BUCKET_WEBSITE: delete_bucket_website,
}
