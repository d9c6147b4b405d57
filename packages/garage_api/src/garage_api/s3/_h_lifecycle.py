"""Bucket lifecycle configuration (Garage: src/api/s3/lifecycle.rs; design §8.1, §8.7).

Get/Put/DeleteBucketLifecycleConfiguration read and write the bucket's
``lifecycle_config`` (a last-writer-wins value of the bucket entry); the rules are applied
by each node's lifecycle worker (``garage_model.lifecycle``) once a day. The XML codec and
the validation are in ``_xml`` (:func:`parse_lifecycle_configuration`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from garage_api.http import Response

from ._api import xml_response
from ._body import RequestBody
from ._errors import S3Error
from ._router import Operation
from ._xml import MAX_XML_BODY_BYTES, LifecycleConfiguration, parse_lifecycle_configuration

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._api import ReqCtx

__all__ = ["HANDLERS"]


async def get_bucket_lifecycle(ctx: ReqCtx) -> Response:
    """GetBucketLifecycleConfiguration: the rules, or ``404 NoSuchLifecycleConfiguration``."""
    _, bucket = ctx.require_bucket()
    params = bucket.params
    assert params is not None  # resolved buckets exist
    rules = params.lifecycle_config.value
    if rules is None:
        name = ctx.bucket_name or ""
        raise S3Error.from_code("NoSuchLifecycleConfiguration", details=[("BucketName", name)])
    return xml_response(LifecycleConfiguration(rules).to_xml())


async def put_bucket_lifecycle(ctx: ReqCtx) -> Response:
    """PutBucketLifecycleConfiguration: replaces the rules (checked first: a refused
    document changes nothing)."""
    bucket_id, _ = ctx.require_bucket()
    body = await RequestBody(ctx.request, ctx.auth).read_all(MAX_XML_BODY_BYTES)
    rules = parse_lifecycle_configuration(body)
    await ctx.garage.locked_helper.update_bucket_lifecycle(bucket_id, rules)
    return Response(200)


async def delete_bucket_lifecycle(ctx: ReqCtx) -> Response:
    """DeleteBucketLifecycle: removes the rules (204 even if there were none, as S3)."""
    bucket_id, _ = ctx.require_bucket()
    await ctx.garage.locked_helper.update_bucket_lifecycle(bucket_id, None)
    return Response(204)


HANDLERS: dict[Operation, Callable[[ReqCtx], Awaitable[Response]]] = {
    Operation.GET_BUCKET_LIFECYCLE_CONFIGURATION: get_bucket_lifecycle,
    Operation.PUT_BUCKET_LIFECYCLE_CONFIGURATION: put_bucket_lifecycle,
    Operation.DELETE_BUCKET_LIFECYCLE: delete_bucket_lifecycle,
}
