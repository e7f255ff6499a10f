//! Alpine packages: version ordering, signed indexes, packages and the installed database.
