"""Consent before any room: versioned templates, the patient's steps and receipts, staff
attestation, and the signed, hash-chained consent ledger."""
