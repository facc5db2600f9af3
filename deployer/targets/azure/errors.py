"""Azure SDK exceptions turned into one readable sentence naming the operation and the resource."""

from __future__ import annotations

import contextlib

from azure.core.exceptions import (ClientAuthenticationError, HttpResponseError, ResourceExistsError,
                                   ResourceNotFoundError, ServiceRequestError)

from azure.identity import CredentialUnavailableError

from deployer.targets.base import MissingPrerequisite, TargetError

NO_CREDENTIAL = ("no usable Azure credential: sign in with `az login` (or set AZURE_CLIENT_ID, "
                 "AZURE_TENANT_ID and a federated token or secret), or run in Azure DevOps with a "
                 "workload-identity service connection")


def credential_problem(exc: ClientAuthenticationError) -> str:
    """Why the credential yielded no token, as one line: ``NO_CREDENTIAL`` when none could even try
    (``CredentialUnavailableError``: no sign-in, no environment), else the refusal as Entra ID (or
    Azure DevOps' OIDC endpoint) worded it, whose AADSTS code names the cause: a federated subject
    the service connection does not match, a disabled application, a wrong tenant."""
    if isinstance(exc, CredentialUnavailableError):
        return NO_CREDENTIAL
    return (f"Entra ID refused the Azure credential: {' '.join((exc.message or str(exc)).split())}; check the "
            "service connection's federated credential (issuer, subject) or your sign-in")


#: At most this many innermost causes are printed; the rest are counted.
MAX_CAUSES = 5


def _odata_json(err) -> dict:
    """azure-core's parsed error (``ODataV4Format``) as the REST error JSON it came from."""
    return {"code": err.code, "message": err.message, "target": err.target,
            "details": [_odata_json(d) for d in err.details or []]}


def _causes(error: dict, resource: str = "") -> list[str]:
    """One line per innermost detail, prefixed with the resource it belongs to (the nearest target
    that is a resource id, nested deployments skipped) and its own target when that is a field."""
    target = error.get("target") or ""
    if "/" in target and "/Microsoft.Resources/deployments/" not in target:
        resource = target.rpartition("/")[2]
    details = error.get("details") or []
    if details:
        return [line for d in details for line in _causes(d, resource)]
    where = " ".join(filter(None, [resource, f"({target})" if target and "/" not in target else ""]))
    return [f"{where + ': ' if where else ''}{error.get('code')}: {error.get('message')}"]


def describe(error: dict) -> str:
    """``code: message`` of an ARM error (REST JSON), then each innermost cause. ARM nests the real
    cause one or two levels per module (``DeploymentFailed`` > ``ResourceDeploymentFailure`` > ...),
    so the levels between say nothing; the leaves are printed, deduplicated."""
    causes = list(dict.fromkeys(_causes(error))) if error.get("details") else []
    more = [f"and {len(causes) - MAX_CAUSES} more"] if len(causes) > MAX_CAUSES else []
    return "; ".join([f"{error.get('code')}: {error.get('message')}", *causes[:MAX_CAUSES], *more])


def platform_says(exc: HttpResponseError) -> str:
    """``describe`` of an SDK error's ARM error, or the first line of its message without one."""
    err = exc.error
    if err is None or not (err.code or err.message):
        return (exc.message or str(exc)).splitlines()[0]
    return describe(_odata_json(err))


def _lro_failed(exc: HttpResponseError) -> bool:
    try:
        return exc.response is not None and exc.response.json().get("status") in ("Failed", "Canceled")
    except Exception:  # noqa: BLE001 - the body is not JSON, so not an LRO status
        return False


@contextlib.contextmanager
def azure_errors(operation: str, resource: str):
    """Translate exceptions raised inside into TargetError (MissingPrerequisite when the credential
    yields no token: ``credential_problem``; ARM's own 401, with its error code, is a TargetError).

    ``operation`` is a verb phrase ("deploy", "read the NSG"), ``resource`` what it acts on.
    """
    try:
        yield
    except ClientAuthenticationError as exc:
        if exc.error is None:  # raised by the credential, before any request to ARM (which names its error)
            raise MissingPrerequisite(f"cannot {operation} {resource}: {credential_problem(exc)}") from None
        raise TargetError(f"cannot {operation} {resource}: Azure rejected the credential (401, "
                          f"{platform_says(exc)}); sign in again or check the service connection") from None
    except ResourceNotFoundError as exc:
        raise TargetError(f"cannot {operation} {resource}: not found (404, {platform_says(exc)})") from None
    except ResourceExistsError as exc:
        raise TargetError(f"cannot {operation} {resource}: conflict (409, {platform_says(exc)}); "
                          "another operation may be running on it, retry when it has finished") from None
    except HttpResponseError as exc:
        if _lro_failed(exc):
            raise TargetError(f"{operation} {resource} failed in Azure: {platform_says(exc)}") from None
        if exc.status_code == 403:
            raise TargetError(f"cannot {operation} {resource}: permission denied (403, {platform_says(exc)}); "
                              "the identity needs Contributor on the subscription or resource group") from None
        if exc.status_code == 409:
            raise TargetError(f"cannot {operation} {resource}: conflict (409, {platform_says(exc)})") from None
        raise TargetError(f"cannot {operation} {resource}: HTTP {exc.status_code} ({platform_says(exc)})") from None
    except ServiceRequestError as exc:
        raise TargetError(f"cannot {operation} {resource}: Azure Resource Manager is unreachable ({exc})") from None
