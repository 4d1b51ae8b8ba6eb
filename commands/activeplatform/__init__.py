"""ActivePlatform (cloud-services billing): reseller accounts and closing-document notifications."""
