//! The domain of a native `pip install`, below the step that drives it
//! (`crate::steps::pip`): its errors ([`error`]), the settings and requirements it starts
//! from ([`settings`]), the wheels it chooses and fetches ([`select`]), and where they are
//! installed ([`scheme`]).

pub mod error;
pub mod installed;
pub mod scheme;
pub mod select;
pub mod settings;

pub use error::PipError;
pub use scheme::RunUser;
