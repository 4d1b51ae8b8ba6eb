"""SMSC (SMS gateway): sub-client invoices and acts as PDF, one document request a minute."""
