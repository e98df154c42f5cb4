//! The batch engine.
