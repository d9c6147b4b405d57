"""Bucket and access key logic shared by the S3 API, the admin API and the CLI
(Garage: src/model/helper/).

- :class:`BucketHelper`: resolve a bucket name for a request (the key's local aliases,
  then the global names, or a raw hex id), and read buckets and keys;
- :class:`LockedHelper`: every admin mutation (create and delete buckets and keys, aliases,
  permissions, bucket configuration), serialised by one lock per node, writing each
  denormalised pair with one timestamp;
- the :class:`HelperError` family, which the API layers map to their own errors.
"""

from ._bucket import BucketHelper as BucketHelper
from ._errors import AccessDeniedError as AccessDeniedError
from ._errors import BadRequestError as BadRequestError
from ._errors import BucketAlreadyExistsError as BucketAlreadyExistsError
from ._errors import BucketNotEmptyError as BucketNotEmptyError
from ._errors import HelperError as HelperError
from ._errors import InvalidBucketNameError as InvalidBucketNameError
from ._errors import KeyAlreadyExistsError as KeyAlreadyExistsError
from ._errors import NoSuchAccessKeyError as NoSuchAccessKeyError
from ._errors import NoSuchBucketError as NoSuchBucketError
from ._key import KeyHelper as KeyHelper
from ._locked import LockedHelper as LockedHelper

__all__ = [
    "AccessDeniedError",
    "BadRequestError",
    "BucketAlreadyExistsError",
    "BucketHelper",
    "BucketNotEmptyError",
    "HelperError",
    "InvalidBucketNameError",
    "KeyAlreadyExistsError",
    "KeyHelper",
    "LockedHelper",
    "NoSuchAccessKeyError",
    "NoSuchBucketError",
]
