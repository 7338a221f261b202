//! The pure dtab engine: linkerd-1/Finagle paths, name trees, dtabs and delegation, with no I/O.
//!
//! # Layout
//!
//! - [`path`]: [`Label`] and [`Path`], the names being routed (`/svc/forex-rate`).
//! - [`tree`]: [`NameTree`] (`~ ! $`, `a | b`, `0.9 * a & 0.1 * b`) and its printer.
//! - [`dtab`]: [`Prefix`], [`Dentry`], [`Dtab`] and the lookup step (`Dtab::lookup`).
//! - [`parse`]: the one recursive-descent parser behind every `read`/`parse`, and [`ParseError`].
//! - [`bind`](mod@bind): [`bind()`](fn@bind), recursive delegation down to the [`Namers`], with loop and size limits.
//! - [`explain`](mod@explain): [`explain()`](fn@explain), the same delegation as an [`Explain`] tree for the admin delegator.
//!
//! The contract is the repository's `docs/dtab.md`; a dtab a linkerd 1 user already has must route the same here.
//!
//! ```
//! use switchyard_dtab::{bind, Dtab, NameTree, NamerLookup, Namers, Path};
//!
//! struct Fs;
//! impl Namers for Fs {
//!     type Bound = String;
//!     fn lookup(&self, path: &Path) -> NamerLookup<String> {
//!         match path.to_string().strip_prefix("/#/io.l5d.fs/") {
//!             Some(name) => NamerLookup::Tree(NameTree::Leaf(name.to_owned())),
//!             None => NamerLookup::NotMine,
//!         }
//!     }
//! }
//!
//! let dtab = Dtab::parse("/svc => /#/io.l5d.fs;")?;
//! let bound = bind(&dtab, &Path::read("/svc/forex-rate")?, &Fs)?;
//! assert_eq!(bound, NameTree::Leaf("forex-rate".to_owned()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod bind;
pub mod dtab;
pub mod explain;
pub mod parse;
pub mod path;
pub mod tree;

pub use bind::{bind, BindError, NamerLookup, Namers, MAX_DEPTH, MAX_NESTING_DEPTH, MAX_WORK};
pub use dtab::{Dentry, Dtab, Prefix, PrefixElem};
pub use explain::{explain, Explain, MAX_EXPLAIN_WORK};
pub use parse::{ParseError, MAX_NESTING};
pub use path::{Label, Path};
pub use tree::{NameTree, Weighted};
