"""Shows a portfolio as its recipients see it, for the demo (scripts/demo): in the hub account,
the portfolio with its products, versions and tag options; in each account it is shared with,
whether the share was accepted and which principals are associated there.

Usage: portfolio.py HUB_EMAIL DISPLAY_NAME   (credentials and endpoint from the AWS_* variables)
"""

import sys

import boto3


def member(account_id: str, service: str):
    """A client acting in a member account through OrganizationAccountAccessRole, as estate does."""
    creds = boto3.client("sts").assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/OrganizationAccountAccessRole",
        RoleSessionName="estate-demo",
    )["Credentials"]
    return boto3.client(
        service,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def main() -> int:
    email, display_name = sys.argv[1], sys.argv[2]
    accounts = boto3.client("organizations").list_accounts()["Accounts"]
    names = {a["Id"]: a["Name"] for a in accounts}
    hub = next(a["Id"] for a in accounts if a["Email"] == email)
    sc = member(hub, "servicecatalog")
    portfolio = next(p for p in sc.list_portfolios()["PortfolioDetails"] if p["DisplayName"] == display_name)
    pid = portfolio["Id"]
    print(f"portfolio {display_name!r} ({pid}) in {names[hub]} ({hub})")
    for view in sc.search_products_as_admin(PortfolioId=pid)["ProductViewDetails"]:
        product = view["ProductViewSummary"]
        versions = sc.list_provisioning_artifacts(ProductId=product["ProductId"])["ProvisioningArtifactDetails"]
        listed = ", ".join(f"{v['Name']}{'' if v.get('Active', True) else ' (deprecated)'}" for v in versions)
        print(f"  product {product['Name']!r}: versions {listed}")
    options = sc.describe_portfolio(Id=pid).get("TagOptions", [])
    print("  tag options: " + ", ".join(sorted(f"{t['Key']}={t['Value']}" for t in options)))
    for account in sc.list_portfolio_access(PortfolioId=pid)["AccountIds"]:
        recipient = member(account, "servicecatalog")
        accepted = any(p["Id"] == pid for p in recipient.list_accepted_portfolio_shares()["PortfolioDetails"])
        principals = [p["PrincipalARN"] for p in recipient.list_principals_for_portfolio(PortfolioId=pid)["Principals"]]
        print(f"  shared with {names.get(account, account)} ({account}): "
              f"{'accepted' if accepted else 'not accepted'}; principals there: {', '.join(principals) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
