//! The child-process boundary around extraction. Being written: see issue 2.
