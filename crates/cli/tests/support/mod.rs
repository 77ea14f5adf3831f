//! What the fault tests of the real `herald` binary share. It all lives in
//! `herald_testkit::fault` (a library, so no test binary carries helpers it does not use);
//! this module only names it the way the tests import it.

pub(crate) use herald_testkit::TestCa as TestPki;
pub(crate) use herald_testkit::fault::*;
