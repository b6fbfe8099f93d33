"""Signing in: IAM Identity Center flows (PKCE, device code) and MFA sessions."""
