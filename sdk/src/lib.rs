//! The Ripcord SDK.
