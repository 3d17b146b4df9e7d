"""The customer's cloud admin in moto (IAM user `customer-admin` of scripts/peers.sh, allowed
everything): creates what a customer would — buckets and objects, roles, a CloudFormation stack
of deploy/customer/aws/ — so that the tests can exercise the worker against it. Prints one JSON
object. Run with the peers' venv python (boto3); the endpoint and keys come from .peers/env.

    moto_admin.py bucket BUCKET KEY...                  create BUCKET (if new), put each KEY
    moto_admin.py role NAME TRUST_JSON POLICY_JSON      create a role with one inline policy
    moto_admin.py stack NAME TEMPLATE KEY=VALUE...      create a stack; print its outputs
"""
import ast
import json
import os
import sys

import boto3


def client(service):
    return boto3.client(
        service,
        endpoint_url=os.environ["ASSET_WORKER_TEST_MOTO_ENDPOINT"],
        region_name="eu-central-1",
        aws_access_key_id=os.environ["ASSET_WORKER_TEST_MOTO_ADMIN_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["ASSET_WORKER_TEST_MOTO_ADMIN_SECRET_ACCESS_KEY"],
    )


def bucket(name, *keys):
    s3 = client("s3")
    try:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    for key in keys:
        s3.put_object(Bucket=name, Key=key, Body=f"object {key}".encode())
    return {"bucket": name, "keys": list(keys)}


def role(name, trust, policy):
    iam = client("iam")
    arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    iam.put_role_policy(RoleName=name, PolicyName="read-objects", PolicyDocument=policy)
    return {"RoleArn": arn}


def stack(name, template, *params):
    cloudformation, iam = client("cloudformation"), client("iam")
    parameters = [dict(zip(("ParameterKey", "ParameterValue"), p.split("=", 1))) for p in params]
    with open(template) as body:
        cloudformation.create_stack(StackName=name, TemplateBody=body.read(), Parameters=parameters,
                                    Capabilities=["CAPABILITY_NAMED_IAM"])
    described = cloudformation.describe_stacks(StackName=name)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    role_name = outputs["RoleArn"].rsplit("/", 1)[1]
    # moto 5.2.5 stores a stack's inline role policies as Python dicts (GetRolePolicy answers
    # their repr), which its IAM authorization cannot read: KeyError 'policy_document', HTTP 500
    # on every S3 call of the role's sessions. Putting each one back, unchanged, through
    # PutRolePolicy stores it as moto's own API does: the policy evaluated is still the one
    # the template created.
    for policy_name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
        if isinstance(document, str):
            document = ast.literal_eval(document)
        iam.put_role_policy(RoleName=role_name, PolicyName=policy_name, PolicyDocument=json.dumps(document))
    created = iam.get_role(RoleName=role_name)["Role"]
    outputs["StackStatus"] = described["StackStatus"]
    outputs["TrustPolicy"] = created["AssumeRolePolicyDocument"]
    outputs["MaxSessionDuration"] = created.get("MaxSessionDuration")
    outputs["Policies"] = {
        policy_name: iam.get_role_policy(RoleName=role_name, PolicyName=policy_name)["PolicyDocument"]
        for policy_name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    }
    return outputs


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    print(json.dumps({"bucket": bucket, "role": role, "stack": stack}[command](*args)))
