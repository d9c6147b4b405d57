"""The bucket, bucket alias and key tables as values: CRDT laws, encodings, name rules.

Garage: src/model/bucket_table.rs, bucket_alias_table.rs, key_table.rs, permission.rs.
"""

from __future__ import annotations

import dataclasses
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from garage_model.bucket_alias_table import BucketAlias, BucketAliasSchema, is_valid_bucket_name
from garage_model.bucket_table import (
    Bucket,
    BucketParams,
    BucketQuotas,
    BucketSchema,
    CorsRule,
    LifecycleExpiration,
    LifecycleFilter,
    LifecycleRule,
    UuidKey,
    WebsiteConfig,
)
from garage_model.key_table import InvalidKeyFormatError, Key, KeyFilter, KeyParams, KeySchema
from garage_model.permission import ALL_PERMISSIONS, NO_PERMISSIONS, BucketKeyPerm
from garage_table.schema import DeletedFilter, EmptyKey, StringKey
from garage_util.crdt import Deletable, Lww, LwwMap, Map
from garage_util.data import FixedBytes32
from garage_util.encode import pack, unpack
from garage_util.errors import DecodeError, UnknownVersionError
from garage_util.testing import (
    check_crdt_laws,
    deletables,
    fixed_bytes32,
    lww_maps,
    lwws,
    maps,
    timestamps,
)

BUCKET_ID = FixedBytes32(bytes([7]) * 32)
KEY_ID = "GK" + "ab" * 12
SECRET = "cd" * 32

# ---------------------------------------------------------------- strategies

key_ids = st.sampled_from(["GK1", "GK2", "GK3"])
names = st.sampled_from(["alpha", "beta", "gamma"])
perms = st.builds(BucketKeyPerm, timestamps(), st.booleans(), st.booleans(), st.booleans())
opt_text = st.none() | st.sampled_from(["a", "b"])
website_configs = st.builds(WebsiteConfig, st.sampled_from(["index.html", "i.htm"]), opt_text)
cors_rules = st.builds(
    CorsRule,
    id=opt_text,
    max_age_seconds=st.none() | st.integers(0, 3),
    allow_origins=st.tuples(st.sampled_from(["*", "https://x"])),
    allow_methods=st.tuples(st.sampled_from(["GET", "PUT"])),
)
expirations = st.builds(LifecycleExpiration.after, st.integers(1, 3)) | st.builds(
    LifecycleExpiration.at, st.sampled_from(["2030-01-01", "2031-01-01"])
)
lifecycle_rules = st.builds(
    LifecycleRule,
    id=opt_text,
    enabled=st.booleans(),
    filter=st.builds(LifecycleFilter, opt_text, st.none() | st.integers(0, 9)),
    abort_incomplete_mpu_days=st.none() | st.integers(1, 3),
    expiration=st.none() | expirations,
)
quotas = st.builds(BucketQuotas, st.none() | st.integers(0, 3), st.none() | st.integers(0, 3))
bucket_params = st.builds(
    BucketParams,
    creation_date=st.integers(0, 5),
    authorized_keys=maps(key_ids, perms),
    aliases=lww_maps(names, st.booleans()),
    local_aliases=lww_maps(st.tuples(key_ids, names), st.booleans()),
    website_config=lwws(st.none() | website_configs),
    cors_config=lwws(st.none() | st.lists(cors_rules, max_size=2).map(tuple)),
    lifecycle_config=lwws(st.none() | st.lists(lifecycle_rules, max_size=2).map(tuple)),
    quotas=lwws(quotas),
)
buckets = st.builds(Bucket, st.just(BUCKET_ID), deletables(bucket_params))
aliases = st.builds(BucketAlias, st.just("alpha"), lwws(st.none() | fixed_bytes32()))
key_params = st.builds(
    KeyParams,
    secret_key=st.sampled_from(["aa" * 32, "bb" * 32]),
    name=lwws(names),
    allow_create_bucket=lwws(st.booleans()),
    authorized_buckets=maps(fixed_bytes32(), perms),
    local_aliases=lww_maps(names, st.none() | fixed_bytes32()),
)
keys = st.builds(Key, st.just(KEY_ID), deletables(key_params))


# ---------------------------------------------------------------- CRDT laws


@given(perms, perms, perms)
def test_bucket_key_perm_is_a_crdt(a: BucketKeyPerm, b: BucketKeyPerm, c: BucketKeyPerm) -> None:
    check_crdt_laws(a, b, c)


@given(buckets, buckets, buckets)
def test_bucket_is_a_crdt(a: Bucket, b: Bucket, c: Bucket) -> None:
    check_crdt_laws(a, b, c)


@given(aliases, aliases, aliases)
def test_bucket_alias_is_a_crdt(a: BucketAlias, b: BucketAlias, c: BucketAlias) -> None:
    check_crdt_laws(a, b, c)


@given(keys, keys, keys)
def test_key_is_a_crdt(a: Key, b: Key, c: Key) -> None:
    check_crdt_laws(a, b, c)


def test_perm_merge_newer_wins_and_equal_stamps_keep_common_flags() -> None:
    old = BucketKeyPerm(5, allow_read=True, allow_write=True, allow_owner=True)
    new = BucketKeyPerm(6)
    assert old.merge(new) == new
    assert new.merge(old) == new
    rw = BucketKeyPerm(7, allow_read=True, allow_write=True)
    ro = BucketKeyPerm(7, allow_read=True, allow_owner=True)
    assert rw.merge(ro) == BucketKeyPerm(7, allow_read=True)
    assert not NO_PERMISSIONS.is_any()
    assert ALL_PERMISSIONS.is_any()
    assert BucketKeyPerm(1, allow_owner=True).is_any()
    assert ALL_PERMISSIONS.with_timestamp(9) == BucketKeyPerm(9, True, True, True)


def test_bucket_params_keep_the_first_creation_date_and_deleted_absorbs() -> None:
    a = Bucket.new(BUCKET_ID, 100)
    b = Bucket.new(BUCKET_ID, 50)
    merged = a.merge(b)
    assert merged.params is not None
    assert merged.params.creation_date == 50
    gone = merged.merge(Bucket.deleted(BUCKET_ID))
    assert gone.is_deleted
    assert gone.params is None
    assert gone.merge(a) == gone
    assert list(gone.authorized_keys()) == []


def test_bucket_lifecycle_config_is_merged() -> None:
    # Garage forgets this field in BucketParams::merge; here a newer lifecycle wins.
    base = Bucket.new(BUCKET_ID, 100)
    assert base.params is not None
    rules = (LifecycleRule(expiration=LifecycleExpiration.after(3)),)
    newer = base.with_params(
        dataclasses.replace(
            base.params, lifecycle_config=base.params.lifecycle_config.update(rules, 200)
        )
    )
    merged = base.merge(newer)
    assert merged.params is not None
    assert merged.params.lifecycle_config.v == rules


def test_merging_different_entries_is_refused() -> None:
    other_id = FixedBytes32(bytes(32))
    with pytest.raises(ValueError, match="different buckets"):
        Bucket.new(BUCKET_ID, 1).merge(Bucket.new(other_id, 1))
    with pytest.raises(ValueError, match="different keys"):
        Key.new("a", now_ms=1).merge(Key.new("b", now_ms=1))
    with pytest.raises(ValueError, match="different names"):
        BucketAlias.new("alpha", 1, None).merge(BucketAlias.new("beta", 1, None))


def test_bucket_alias_conflicting_writes_pick_the_same_winner() -> None:
    one, two = FixedBytes32(bytes([1]) * 32), FixedBytes32(bytes([2]) * 32)
    a, b = BucketAlias.new("alpha", 5, one), BucketAlias.new("alpha", 5, two)
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).bucket_id in (one, two)
    # An unset alias at the same stamp loses to a set one (None is the bottom).
    assert BucketAlias.new("alpha", 5, None).merge(a) == a


# ---------------------------------------------------------------- encodings


@given(buckets)
def test_bucket_roundtrips(bucket: Bucket) -> None:
    data = bucket.encode()
    assert data.startswith(b"G01bkt")
    assert Bucket.decode(data) == bucket
    assert Bucket.decode(data).encode() == data


@given(aliases)
def test_bucket_alias_roundtrips(alias: BucketAlias) -> None:
    assert BucketAlias.decode(alias.encode()) == alias


@given(keys)
def test_key_roundtrips(key: Key) -> None:
    assert Key.decode(key.encode()) == key


@given(perms)
def test_perm_roundtrips(perm: BucketKeyPerm) -> None:
    assert unpack(BucketKeyPerm, pack(perm)) == perm


def test_decoding_the_wrong_entry_type_fails_clearly() -> None:
    key_bytes = Key.new("a", now_ms=1).encode()
    with pytest.raises(UnknownVersionError, match="Bucket"):
        Bucket.decode(key_bytes)
    with pytest.raises(DecodeError):
        Bucket.decode(b"G01bkt" + pack({"id": b"short", "state": {"value": None}}))


def test_key_filter_travels_and_needs_exactly_one_criterion() -> None:
    for f in (KeyFilter.matching("gk1"), KeyFilter.deleted_state(DeletedFilter.NOT_DELETED)):
        assert unpack(KeyFilter, pack(f)) == f
    with pytest.raises(ValueError, match="exactly one"):
        KeyFilter()
    with pytest.raises(ValueError, match="exactly one"):
        KeyFilter(deleted=DeletedFilter.ANY, matches="x")
    with pytest.raises(DecodeError):
        unpack(KeyFilter, pack({"deleted": None, "matches": None}))


def test_lifecycle_expiration_is_one_of_two() -> None:
    assert LifecycleExpiration.after(3).after_days == 3
    assert LifecycleExpiration.at("2030-01-01").at_date == "2030-01-01"
    with pytest.raises(ValueError, match="exactly one"):
        LifecycleExpiration()
    with pytest.raises(ValueError, match="exactly one"):
        LifecycleExpiration(after_days=1, at_date="2030-01-01")


def test_lifecycle_filter_matches_all_its_conditions() -> None:
    f = LifecycleFilter(prefix="logs/", size_gt=10, size_lt=100)
    assert f.matches("logs/a", 50)
    assert not f.matches("data/a", 50)
    assert not f.matches("logs/a", 10)
    assert not f.matches("logs/a", 100)
    assert LifecycleFilter().matches("anything", 0)


# ---------------------------------------------------------------- keys, schemas


def test_new_key_has_garage_format_and_no_rights() -> None:
    key = Key.new("laptop", now_ms=1000)
    params = key.params
    assert params is not None
    assert re.fullmatch(r"GK[0-9a-f]{24}", key.key_id)
    assert re.fullmatch(r"[0-9a-f]{64}", params.secret_key)
    assert key.name == "laptop"
    assert not params.allow_create_bucket.v
    assert not key.allow_read(BUCKET_ID)
    assert Key.new("laptop", now_ms=1000).key_id != key.key_id
    # The secret never shows in a repr (logs, test reports).
    assert params.secret_key not in repr(key)
    assert params.secret_key not in repr(params)


def test_import_key_validates_its_format() -> None:
    key = Key.import_(KEY_ID, SECRET, "imported", now_ms=1)
    assert key.key_id == KEY_ID
    assert key.params is not None
    assert key.params.secret_key == SECRET
    with pytest.raises(InvalidKeyFormatError, match="access key id 'AKIA1234'"):
        Key.import_("AKIA1234", SECRET, "x", now_ms=1)
    with pytest.raises(InvalidKeyFormatError, match="64 lowercase hex") as info:
        Key.import_(KEY_ID, "not-a-secret", "x", now_ms=1)
    assert "not-a-secret" not in str(info.value)
    assert issubclass(InvalidKeyFormatError, ValueError)


def test_key_permissions_follow_authorized_buckets() -> None:
    key = Key.import_(KEY_ID, SECRET, "k", now_ms=1)
    assert key.params is not None
    granted = Map(((BUCKET_ID, BucketKeyPerm(5, allow_read=True)),))
    key = key.with_params(dataclasses.replace(key.params, authorized_buckets=granted))
    assert key.allow_read(BUCKET_ID)
    assert not key.allow_write(BUCKET_ID)
    assert not key.allow_owner(BUCKET_ID)
    assert not Key.deleted(KEY_ID).allow_read(BUCKET_ID)


def test_key_filter_matches_id_prefix_or_name_case_insensitively() -> None:
    schema = KeySchema()
    key = Key.import_(KEY_ID, SECRET, "Backup Server", now_ms=1)
    assert schema.matches_filter(key, KeyFilter.matching("gkab"))
    assert schema.matches_filter(key, KeyFilter.matching("server"))
    assert not schema.matches_filter(key, KeyFilter.matching("abab"))  # not a prefix
    assert not schema.matches_filter(Key.deleted(KEY_ID), KeyFilter.matching("gk"))
    assert schema.matches_filter(key, KeyFilter.deleted_state(DeletedFilter.NOT_DELETED))
    assert schema.matches_filter(
        Key.deleted(KEY_ID), KeyFilter.deleted_state(DeletedFilter.DELETED)
    )


def test_schemas_keys_and_tombstones() -> None:
    bucket = Bucket.new(BUCKET_ID, 1)
    assert BucketSchema.TABLE_NAME == "bucket_v2"
    assert bucket.partition_key() == EmptyKey()
    assert bucket.sort_key() == UuidKey(BUCKET_ID)
    assert bucket.sort_key().sort_key() == bytes(BUCKET_ID)
    assert UuidKey(BUCKET_ID).hash() == BUCKET_ID
    # Deleted buckets and keys are never garbage-collected, but filters see them deleted.
    assert not Bucket.deleted(BUCKET_ID).is_tombstone()
    assert BucketSchema().matches_filter(Bucket.deleted(BUCKET_ID), DeletedFilter.DELETED)
    assert BucketSchema().matches_filter(bucket, DeletedFilter.NOT_DELETED)
    assert not Key.deleted(KEY_ID).is_tombstone()
    assert KeySchema.TABLE_NAME == "key"
    assert Key.deleted(KEY_ID).sort_key() == StringKey(KEY_ID)
    # An unset alias is a tombstone (GC frees the name).
    assert BucketAliasSchema.TABLE_NAME == "bucket_alias"
    assert BucketAlias.new("alpha", 1, None).is_tombstone()
    assert not BucketAlias.new("alpha", 1, BUCKET_ID).is_tombstone()
    assert BucketAliasSchema().matches_filter(BucketAlias.new("a", 1, None), DeletedFilter.DELETED)
    assert BucketAlias.new("alpha", 1, BUCKET_ID).sort_key() == StringKey("alpha")


def test_bucket_params_list_active_aliases() -> None:
    params = BucketParams.new(1)
    params = dataclasses.replace(
        params,
        aliases=LwwMap.from_items({"on": (1, True), "off": (2, False)}),
        local_aliases=LwwMap.from_items({("GK1", "mine"): (1, True), ("GK1", "old"): (1, False)}),
    )
    assert params.active_aliases() == ["on"]
    assert params.active_local_aliases() == [("GK1", "mine")]
    kparams = KeyParams(
        SECRET,
        Lww(1, "k"),
        Lww(1, False),
        Map(),
        LwwMap.from_items({"a": (1, BUCKET_ID), "b": (1, None)}),
    )
    assert kparams.active_local_aliases() == [("a", BUCKET_ID)]
    assert Key(KEY_ID, Deletable.present(kparams)).local_alias("a") == BUCKET_ID


# ---------------------------------------------------------------- bucket names


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("abc", True),
        ("my-bucket.example", True),
        ("a" * 63, True),
        ("0bucket9", True),
        ("ab", False),  # too short
        ("a" * 64, False),  # too long
        ("MyBucket", False),  # uppercase
        ("my_bucket", False),  # underscore
        ("-bucket", False),
        ("bucket-", False),
        (".bucket", False),
        ("bucket.", False),
        ("192.168.1.1", False),  # an IP address
        ("192.168.1", True),  # not an IP address
        ("xn--bcher-kva", False),  # punycode
        ("www.xn--bcher-kva", False),
        ("my-s3alias", False),
        ("bücher", False),
        ("", False),
    ],
)
def test_bucket_name_rules(name: str, valid: bool) -> None:
    assert is_valid_bucket_name(name) is valid


def test_punycode_names_when_allowed() -> None:
    assert is_valid_bucket_name("xn--bcher-kva", allow_punycode=True)
    assert is_valid_bucket_name("www.xn--bcher-kva", allow_punycode=True)
    assert not is_valid_bucket_name("xn--bcher-kva-s3alias", allow_punycode=True)
