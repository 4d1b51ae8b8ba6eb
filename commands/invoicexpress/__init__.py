"""InvoiceXpress (Portuguese invoicing): invoice sequences and AT communication settings."""
