//! Test connection: check the settings against the administration, process a test invoice, save the settings.
