"""Bootstrap a fresh management account with an organization on the emulator.

For the demo (scripts/demo): acts as a brand-new AWS account, the way a platform team's
management account would start, and prints `export` lines giving the credentials, so the
estate binary can be pointed at it through the standard AWS environment variables.

Usage: bootstrap.py ENDPOINT ACCOUNT_ID
"""

import sys

import boto3


def main() -> int:
    endpoint, account = sys.argv[1], sys.argv[2]
    sts = boto3.client(
        "sts",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="AKIAIOSFODNN7EXAMPLE",
        aws_secret_access_key="demo",
    )
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account}:role/OrganizationAccountAccessRole",
        RoleSessionName="estate-demo",
    )["Credentials"]
    org = boto3.client(
        "organizations",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    org.create_organization(FeatureSet="ALL")
    print(f"export AWS_ACCESS_KEY_ID={creds['AccessKeyId']}")
    print(f"export AWS_SECRET_ACCESS_KEY={creds['SecretAccessKey']}")
    print(f"export AWS_SESSION_TOKEN={creds['SessionToken']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
