//! Errors of the engine: what was wrong with a document, and where.

use std::fmt;

/// One problem in a document: the path of the offending value
/// (`flags.new-checkout.rollout.percentage`) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl Problem {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a document was refused. Nothing is applied when a document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// The text is not a document at all: bad syntax, a wrong type or an unknown field.
    /// Parsing stops at the first such problem.
    #[error("the document could not be read: {0}")]
    Parse(Problem),
    /// The document reads, but some values are invalid. Every problem is listed.
    #[error("the document is invalid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Invalid(Vec<Problem>),
}

impl DocumentError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            DocumentError::Parse(problem) => std::slice::from_ref(problem),
            DocumentError::Invalid(problems) => problems,
        }
    }
}
