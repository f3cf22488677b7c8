//! Typed positions in a `Config`'s lists: a route's upstream is an `UpstreamId`, not a bare
//! `usize` that could index the providers by mistake. The runtime's per-route, per-provider
//! and per-upstream state is reached through the same ids.

use std::fmt;

macro_rules! id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(u32);

        impl $name {
            /// The id of the `i`-th entry of its list in the config. (A config file cannot
            /// hold `u32::MAX` tables; past it the id would saturate, never wrap.)
            pub fn new(i: usize) -> Self {
                Self(u32::try_from(i).unwrap_or(u32::MAX))
            }

            pub fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }
    };
}

id!(
    /// A route: its position in the file.
    RouteId
);
id!(
    /// A `[providers.*]` table.
    ProviderId
);
id!(
    /// An `[upstreams.*]` table.
    UpstreamId
);
