"""Bucket operations (Garage: src/api/s3/bucket.rs): list, create, head, delete, location,
versioning and ACL."""

from __future__ import annotations

from typing import TYPE_CHECKING

from garage_api.http import Response
from garage_model.helper import NoSuchBucketError

from ._api import ANY_REGION, xml_response
from ._body import RequestBody
from ._errors import S3Error
from ._router import Operation
from ._xml import (
    MAX_XML_BODY_BYTES,
    AccessControlPolicy,
    BucketEntry,
    ListAllMyBucketsResult,
    LocationConstraint,
    Owner,
    VersioningConfiguration,
    parse_create_bucket_configuration,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._api import ReqCtx

__all__ = ["HANDLERS"]


def _owner(ctx: ReqCtx) -> Owner:
    return Owner(ctx.key.key_id, ctx.key.name)


async def list_buckets(ctx: ReqCtx) -> Response:
    """Every bucket the key has a permission on, once per name it can use (its local
    aliases, then the global ones), sorted by name."""
    params = ctx.key.params
    assert params is not None  # the key is live: it signed
    helper = ctx.garage.bucket_helper
    local: dict[bytes, list[str]] = {}
    for name, bucket_id in params.active_local_aliases():
        local.setdefault(bytes(bucket_id), []).append(name)
    entries: dict[str, BucketEntry] = {}
    for bucket_id, perm in params.authorized_buckets.items():
        if not perm.is_any():
            continue
        try:
            bucket = await helper.get_existing_bucket(bucket_id)
        except NoSuchBucketError:
            continue
        bparams = bucket.params
        assert bparams is not None
        for name in [*local.get(bytes(bucket_id), []), *bparams.active_aliases()]:
            entries.setdefault(name, BucketEntry(name, bparams.creation_date))
    result = ListAllMyBucketsResult([entries[n] for n in sorted(entries)], _owner(ctx))
    return xml_response(result.to_xml())


async def create_bucket(ctx: ReqCtx) -> Response:
    """CreateBucket: a local alias of the key (which needs ``allow_create_bucket``)."""
    assert ctx.bucket_name is not None
    body = await RequestBody(ctx.request, ctx.auth).read_all(MAX_XML_BODY_BYTES)
    config = parse_create_bucket_configuration(body)
    region = ctx.api.region
    constraint = config.location_constraint
    if constraint and region != ANY_REGION and constraint != region:
        raise S3Error.from_code(
            "InvalidRequest",
            f"the location constraint {constraint!r} is not this server's region {region!r}",
        )
    await ctx.garage.locked_helper.create_bucket(
        ctx.bucket_name, owner_key_id=ctx.key.key_id, local=True
    )
    return Response(200, [("location", f"/{ctx.bucket_name}")])


async def head_bucket(ctx: ReqCtx) -> Response:
    """HeadBucket: 200 when the bucket exists and the key may read it."""
    return Response(200, [("x-amz-bucket-region", ctx.api.region)])


async def delete_bucket(ctx: ReqCtx) -> Response:
    """DeleteBucket: only an empty bucket. When the name is one of several aliases, only
    that alias goes away (as Garage)."""
    bucket_id, bucket = ctx.require_bucket()
    params = bucket.params
    assert params is not None
    assert ctx.bucket_name is not None
    locked = ctx.garage.locked_helper
    name, key_id = ctx.bucket_name, ctx.key.key_id
    is_local = ctx.key.local_alias(name) == bucket_id
    aliases = len(params.active_aliases()) + len(params.active_local_aliases())
    if aliases > 1:
        if is_local:
            await locked.unset_local_alias(bucket_id, key_id, name)
        else:
            await locked.unset_global_alias(bucket_id, name)
        return Response(204)
    await locked.delete_bucket(bucket_id)
    return Response(204)


async def get_bucket_location(ctx: ReqCtx) -> Response:
    region = ctx.api.region
    location = LocationConstraint("us-east-1" if region == ANY_REGION else region)
    return xml_response(location.to_xml())


async def get_bucket_versioning(ctx: ReqCtx) -> Response:
    """Versioning is never enabled."""
    return xml_response(VersioningConfiguration().to_xml())


async def get_bucket_acl(ctx: ReqCtx) -> Response:
    """A minimal ACL: the requesting key has full control."""
    return xml_response(AccessControlPolicy(_owner(ctx)).to_xml())


HANDLERS: dict[Operation, Callable[[ReqCtx], Awaitable[Response]]] = {
    Operation.LIST_BUCKETS: list_buckets,
    Operation.CREATE_BUCKET: create_bucket,
    Operation.HEAD_BUCKET: head_bucket,
    Operation.DELETE_BUCKET: delete_bucket,
    Operation.GET_BUCKET_LOCATION: get_bucket_location,
    Operation.GET_BUCKET_VERSIONING: get_bucket_versioning,
    Operation.GET_BUCKET_ACL: get_bucket_acl,
}
