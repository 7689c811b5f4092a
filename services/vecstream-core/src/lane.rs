//! Priority lanes of `vecstream serve`: who is waiting for a vector decides who goes first.

/// A lane, highest priority first: a search query waits on a person, the stream on
/// freshness, a reindex on nothing but its own end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Lane {
    Query,
    Stream,
    Bulk,
}

/// The header a client names its lane with.
pub const LANE_HEADER: &str = "x-vecstream-lane";

impl Lane {
    /// Every lane, highest priority first.
    pub const ALL: [Lane; 3] = [Lane::Query, Lane::Stream, Lane::Bulk];

    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Query => "query",
            Lane::Stream => "stream",
            Lane::Bulk => "bulk",
        }
    }

    /// Position in [`Lane::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl std::fmt::Display for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Lane {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "query" => Ok(Lane::Query),
            "stream" => Ok(Lane::Stream),
            "bulk" => Ok(Lane::Bulk),
            other => Err(format!("unknown lane {other:?} (query, stream, bulk)")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_parse_and_order_by_priority() {
        assert_eq!(" Bulk ".parse::<Lane>(), Ok(Lane::Bulk));
        assert!("vip".parse::<Lane>().is_err());
        assert!(Lane::Query < Lane::Stream && Lane::Stream < Lane::Bulk);
        assert_eq!(Lane::ALL.map(Lane::index), [0, 1, 2]);
    }
}
