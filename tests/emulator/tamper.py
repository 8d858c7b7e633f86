"""An out-of-band change, as on-call might make by hand in the console: moves the account
with the given email to the organization root. For the demo (scripts/demo).

Usage: tamper.py EMAIL   (credentials and endpoint from the standard AWS_* variables)
"""

import sys

import boto3


def main() -> int:
    email = sys.argv[1]
    org = boto3.client("organizations")
    root = org.list_roots()["Roots"][0]["Id"]
    account = next(a for a in org.list_accounts()["Accounts"] if a["Email"] == email)
    parent = org.list_parents(ChildId=account["Id"])["Parents"][0]["Id"]
    org.move_account(AccountId=account["Id"], SourceParentId=parent, DestinationParentId=root)
    print(f"moved {account['Name']} ({account['Id']}) from {parent} to the root {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
