//! CRM provider adapters.
