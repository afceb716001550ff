//! Provider sandboxes.
