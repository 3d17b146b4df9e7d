#!/usr/bin/env bash
# Diagnostic for operators and developers (not the test suite): proves with real calls that the
# peers started by scripts/peers.sh do what the delegated-access tests rely on. Starts them if
# they are not running. Uses the venv's python (boto3 comes with moto) and curl.
#
#   scripts/peers-smoke.sh            every check, including the revoke trick (restarts SeaweedFS
#                                     twice: do not run it while a test suite uses the peers)
#   PEERS_SMOKE_REVOKE=0 scripts/peers-smoke.sh    without the restarts
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=$ROOT/.venv/bin/python
PEERS=$ROOT/scripts/peers.sh
command -v curl >/dev/null || { echo "peers-smoke: needs curl (apt-get install curl)" >&2; exit 1; }

"$PEERS" start
# shellcheck disable=SC1091
. "${PEERS_STATE_DIR:-$ROOT/.peers}/env"

passed=0
failed=0
# check DESCRIPTION EXPECTED ACTUAL
check() {
    if [[ $2 == "$3" ]]; then
        printf 'ok    %s (%s)\n' "$1" "$3"
        passed=$((passed + 1))
    else
        printf 'FAIL  %s: expected %s, got %s\n' "$1" "$2" "$3"
        failed=$((failed + 1))
    fi
}
# status URL: the HTTP status of a GET
status() { curl -s -o /dev/null -w '%{http_code}' "$1"; }
# py SCRIPT ARGS…: the venv's python on a script given on stdin
py() { "$PY" - "$@"; }
# py_tamper: the URL on stdin with the last hex digit of its signature changed
py_tamper() { "$PY" -c '
import sys, re
url = sys.stdin.read().strip()
def flip(m):
    sig = m.group(2)
    return m.group(1) + sig[:-1] + ("0" if sig[-1] != "0" else "1")
print(re.sub(r"(X-(?:Amz|Goog)-Signature=)([0-9a-f]+)", lambda m: flip(m), url))'; }

stamp=$(date +%s)
body="hello from peers-smoke $stamp"

echo "== SeaweedFS (S3 + STS) at $ASSET_WORKER_TEST_S3_ENDPOINT"
# Admin: the bucket and one object. Then AssumeRole (worker, noget) with the admin keys and
# presign GETs with the temporary credentials, as the worker will.
presign() { # ROLE_ARN SESSION_NAME EXPIRES [EXTERNAL_ID [SESSION_POLICY]] → the presigned URL of smoke/hello.txt
    py "$1" "$2" "$3" "${4:-}" "${5:-}" <<'EOF'
import os, sys, boto3
from botocore.config import Config
role, session, expires, external_id, policy = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
ep = os.environ["ASSET_WORKER_TEST_S3_ENDPOINT"]
admin = dict(aws_access_key_id=os.environ["ASSET_WORKER_TEST_S3_ADMIN_ACCESS_KEY_ID"],
             aws_secret_access_key=os.environ["ASSET_WORKER_TEST_S3_ADMIN_SECRET_ACCESS_KEY"])
sts = boto3.client("sts", endpoint_url=os.environ["ASSET_WORKER_TEST_STS_ENDPOINT"],
                   region_name="eu-central-1", **admin)
kw = {"ExternalId": external_id} if external_id else {}
if policy:
    kw["Policy"] = policy
c = sts.assume_role(RoleArn=role, RoleSessionName=session, DurationSeconds=900, **kw)["Credentials"]
s3 = boto3.client("s3", endpoint_url=ep, region_name="eu-central-1",
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
                  aws_access_key_id=c["AccessKeyId"], aws_secret_access_key=c["SecretAccessKey"],
                  aws_session_token=c["SessionToken"])
print(s3.generate_presigned_url("get_object", Params={"Bucket": os.environ["ASSET_WORKER_TEST_S3_BUCKET"],
                                "Key": "smoke/hello.txt"}, ExpiresIn=expires))
EOF
}
put=$(py "$body" <<'EOF'
import os, sys, boto3
from botocore.config import Config
s3 = boto3.client("s3", endpoint_url=os.environ["ASSET_WORKER_TEST_S3_ENDPOINT"], region_name="eu-central-1",
                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
                  aws_access_key_id=os.environ["ASSET_WORKER_TEST_S3_ADMIN_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["ASSET_WORKER_TEST_S3_ADMIN_SECRET_ACCESS_KEY"])
bucket = os.environ["ASSET_WORKER_TEST_S3_BUCKET"]
try:
    s3.create_bucket(Bucket=bucket)
except s3.exceptions.BucketAlreadyOwnedByYou:
    pass
s3.put_object(Bucket=bucket, Key="smoke/hello.txt", Body=sys.argv[1].encode())
print(s3.head_object(Bucket=bucket, Key="smoke/hello.txt")["ContentLength"])
EOF
)
check "admin creates bucket bkt and uploads smoke/hello.txt" "${#body}" "$put"

url=$(presign "$ASSET_WORKER_TEST_S3_ROLE_ARN" "job-smoke-$stamp" 300)
echo "      presigned with role worker: ${url%%X-Amz-Credential=*}X-Amz-Credential=… ($(grep -o 'X-Amz-[A-Za-z-]*=' <<<"$url" | tr -d = | tr '\n' ' '))"
check "GET with role worker's presigned URL" 200 "$(status "$url")"
check "  … returns the object" "$body" "$(curl -s "$url")"
check "GET with a tampered signature" 403 "$(status "$(py_tamper <<<"$url")")"
check "GET with the session token dropped" 403 "$(status "$(sed -E 's/&?X-Amz-Security-Token=[^&]*//' <<<"$url")")"
check "GET with role noget's presigned URL" 403 \
    "$(status "$(presign "$ASSET_WORKER_TEST_S3_NOGET_ROLE_ARN" "job-smoke-noget-$stamp" 300)")"
short=$(presign "$ASSET_WORKER_TEST_S3_ROLE_ARN" "job-smoke-exp-$stamp" 1)
sleep 2
check "GET with an expired presigned URL (1 s, fetched after 2 s)" 403 "$(status "$short")"
check "GET with a session policy naming the bucket (bkt/*)" 200 \
    "$(status "$(presign "$ASSET_WORKER_TEST_S3_ROLE_ARN" "job-smoke-sp-$stamp" 300 "" \
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::bkt/*"}]}')")"
check "GET with a session policy naming another bucket (enforced)" 403 \
    "$(status "$(presign "$ASSET_WORKER_TEST_S3_ROLE_ARN" "job-smoke-sp2-$stamp" 300 "" \
        '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::other/*"}]}')")"
check "AssumeRole ignores ExternalId (a wrong one is accepted: checked on moto instead)" 200 \
    "$(status "$(presign "$ASSET_WORKER_TEST_S3_ROLE_ARN" "job-smoke-ext-$stamp" 300 wrong-external-id)")"

if [[ ${PEERS_SMOKE_REVOKE:-1} != 0 ]]; then
    echo "   revoke: restart SeaweedFS with iam-revoked.json (worker without s3:GetObject)"
    "$PEERS" restart-seaweedfs "$ASSET_WORKER_TEST_S3_IAM_REVOKED_CONFIG"
    check "GET with the URL minted before the revoke" 403 "$(status "$url")"
    "$PEERS" restart-seaweedfs "$ASSET_WORKER_TEST_S3_IAM_CONFIG"
    check "GET with the same URL after restoring iam.json (URLs are stateless)" 200 "$(status "$url")"
fi

echo "== moto (STS, IAM auth on) at $ASSET_WORKER_TEST_MOTO_ENDPOINT"
session="job-smoke-$stamp"
session_policy='{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:GetObject","Resource":"arn:aws:s3:::customer-bucket/*"}]}'
moto_assume() { # EXTERNAL_ID SECRET SESSION → "ok ARN" or the error code
    py "$1" "$2" "$3" "$session_policy" <<'EOF'
import os, sys, boto3, botocore.exceptions
external_id, secret, session, policy = sys.argv[1:5]
sts = boto3.client("sts", endpoint_url=os.environ["ASSET_WORKER_TEST_MOTO_ENDPOINT"], region_name="eu-central-1",
                   aws_access_key_id=os.environ["ASSET_WORKER_TEST_MOTO_ACCESS_KEY_ID"],
                   aws_secret_access_key=secret)
kw = {"ExternalId": external_id} if external_id != "-" else {}
try:
    r = sts.assume_role(RoleArn=os.environ["ASSET_WORKER_TEST_MOTO_ROLE_ARN"], RoleSessionName=session,
                        DurationSeconds=900, Policy=policy, **kw)
    print("ok", r["AssumedRoleUser"]["Arn"])
except botocore.exceptions.ClientError as e:
    print(e.response["Error"]["Code"])
EOF
}
secret=$ASSET_WORKER_TEST_MOTO_SECRET_ACCESS_KEY
check "AssumeRole with the right ExternalId and a session policy" \
    "ok arn:aws:sts::123456789012:assumed-role/HubDelegatedAccess/$session" \
    "$(moto_assume "$ASSET_WORKER_TEST_MOTO_EXTERNAL_ID" "$secret" "$session")"
check "AssumeRole with a wrong ExternalId" AccessDenied "$(moto_assume wrong-id "$secret" "$session-bad")"
check "AssumeRole without ExternalId: ALLOWED (moto skips a condition whose key is absent)" \
    "ok arn:aws:sts::123456789012:assumed-role/HubDelegatedAccess/$session-none" \
    "$(moto_assume - "$secret" "$session-none")"
check "AssumeRole signed with a wrong secret" SignatureDoesNotMatch \
    "$(moto_assume "$ASSET_WORKER_TEST_MOTO_EXTERNAL_ID" "${secret}x" "$session-sig")"

# moto_sessions SESSION_NAME: the entries of GET /moto-api/data.json → .sts.AssumedRole[] with
# that .session_name, one JSON object a line (secrets elided)
moto_sessions() {
    py "$1" <<'EOF'
import json, os, sys, urllib.request
url = os.environ["ASSET_WORKER_TEST_MOTO_ENDPOINT"] + "/moto-api/data.json"
for r in json.load(urllib.request.urlopen(url))["sts"]["AssumedRole"]:
    if r["session_name"] == sys.argv[1]:
        for k in ("secret_access_key", "session_token"):
            r[k] = "…"
        print(json.dumps(r, sort_keys=True))
EOF
}
# field JSON KEY: one field of a JSON object, as text (null → "null")
field() { "$PY" -c 'import json,sys; v=json.loads(sys.argv[1]).get(sys.argv[2]); print("null" if v is None else v)' "$1" "$2"; }

echo "   read back: GET /moto-api/data.json → .sts.AssumedRole[] where .session_name == \"$session\""
entry=$(moto_sessions "$session")
echo "      $entry"
check "  one entry" 1 "$(grep -c . <<<"$entry")"
check "  .external_id" "$ASSET_WORKER_TEST_MOTO_EXTERNAL_ID" "$(field "$entry" external_id)"
check "  .role_arn" "$ASSET_WORKER_TEST_MOTO_ROLE_ARN" "$(field "$entry" role_arn)"
check "  .policy (the session policy, verbatim)" "$session_policy" "$(field "$entry" policy)"
check "  the session without ExternalId shows .external_id null" null \
    "$(field "$(moto_sessions "$session-none")" external_id)"
check "  the wrong-ExternalId and wrong-secret attempts left no session" "0 0" \
    "$(moto_sessions "$session-bad" | grep -c . || true) $(moto_sessions "$session-sig" | grep -c . || true)"

echo "   read back: the request itself from \$ASSET_WORKER_TEST_MOTO_RECORDING (data.json has no duration)"
recorded=$(py "$ASSET_WORKER_TEST_MOTO_RECORDING" "$session" <<'EOF'
import base64, json, sys, urllib.parse
for line in open(sys.argv[1]):
    e = json.loads(line)
    body = base64.b64decode(e["body"]).decode() if e.get("body_encoded") else (e.get("body") or "")
    q = dict(urllib.parse.parse_qsl(body))
    if q.get("Action") == "AssumeRole" and q.get("RoleSessionName") == sys.argv[2]:
        print("\t".join([q.get("DurationSeconds", ""), q.get("ExternalId", ""), q.get("Policy", "")]))
EOF
)
IFS=$'\t' read -r got_duration got_ext got_policy <<<"$recorded"
check "  recorded DurationSeconds" 900 "$got_duration"
check "  recorded ExternalId" "$ASSET_WORKER_TEST_MOTO_EXTERNAL_ID" "$got_ext"
check "  recorded Policy" "$session_policy" "$got_policy"

echo "== fake-gcs-server at $ASSET_WORKER_TEST_GCS_ENDPOINT"
gcs=$ASSET_WORKER_TEST_GCS_ENDPOINT
gbucket="smoke-$stamp"
check "create bucket $gbucket (JSON API)" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
        -d "{\"name\":\"$gbucket\"}" "$gcs/storage/v1/b?project=test")"
check "upload dir/hello.txt (simple media upload)" 200 \
    "$(curl -s -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: text/plain' --data-binary "$body" \
        "$gcs/upload/storage/v1/b/$gbucket/o?uploadType=media&name=dir/hello.txt")"
media=$(field "$(curl -s "$gcs/storage/v1/b/$gbucket/o/dir%2Fhello.txt")" mediaLink)
echo "      mediaLink: $media"
check "GET by its media URL" "$body" "$(curl -s "$media")"
check "GET ?alt=media" "$body" "$(curl -s "$gcs/storage/v1/b/$gbucket/o/dir%2Fhello.txt?alt=media")"
check "GET path-style /BUCKET/OBJECT (a V4 signed URL's shape)" "$body" "$(curl -s "$gcs/$gbucket/dir/hello.txt")"
check "  … with a bogus X-Goog-Signature: still 200 (no signature check)" 200 \
    "$(status "$gcs/$gbucket/dir/hello.txt?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Signature=00")"
check "GET a missing object" 404 "$(status "$gcs/$gbucket/dir/missing.txt")"

echo "smoke: $passed passed, $failed failed"
((failed == 0))
