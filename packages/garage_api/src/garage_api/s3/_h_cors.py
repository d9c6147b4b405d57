"""Bucket CORS configuration (Garage: src/api/s3/cors.rs; design §8.1, §10.2).

Get/Put/DeleteBucketCors store the rules that the S3 server (``_api.py``) and the website
server apply to browsers' requests (the matching itself is ``_cors.py``). The three
operations need the ``owner`` permission (the router says so) and write through
``LockedHelper.update_bucket_cors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from garage_api.http import Response

from ._api import xml_response
from ._body import RequestBody
from ._errors import S3Error
from ._router import Operation
from ._xml import MAX_XML_BODY_BYTES, CORSConfiguration, parse_cors_configuration

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._api import ReqCtx

__all__ = ["HANDLERS"]


async def get_bucket_cors(ctx: ReqCtx) -> Response:
    """GetBucketCors: the rules, or ``404 NoSuchCORSConfiguration`` (AWS's answer; Garage
    answers ``204`` with no body)."""
    _, bucket = ctx.require_bucket()
    params = bucket.params
    assert params is not None  # resolved buckets exist
    rules = params.cors_config.value
    if rules is None:
        raise S3Error.from_code(
            "NoSuchCORSConfiguration", details=[("BucketName", ctx.bucket_name or "")]
        )
    return xml_response(CORSConfiguration(rules).to_xml())


async def put_bucket_cors(ctx: ReqCtx) -> Response:
    """PutBucketCors: checks the document (and its Content-MD5 or checksum), then replaces
    the bucket's rules with it."""
    bucket_id, _ = ctx.require_bucket()
    body = await RequestBody(ctx.request, ctx.auth).read_all(MAX_XML_BODY_BYTES)
    rules = parse_cors_configuration(body)
    await ctx.garage.locked_helper.update_bucket_cors(bucket_id, rules)
    return Response(200)


async def delete_bucket_cors(ctx: ReqCtx) -> Response:
    """DeleteBucketCors: no more rules (``204`` even if there were none)."""
    bucket_id, _ = ctx.require_bucket()
    await ctx.garage.locked_helper.update_bucket_cors(bucket_id, None)
    return Response(204)


HANDLERS: dict[Operation, Callable[[ReqCtx], Awaitable[Response]]] = {
    Operation.GET_BUCKET_CORS: get_bucket_cors,
    Operation.PUT_BUCKET_CORS: put_bucket_cors,
    Operation.DELETE_BUCKET_CORS: delete_bucket_cors,
}
