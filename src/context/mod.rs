//! The build context: the directory a build reads COPY/ADD sources from, filtered by
//! `.dockerignore`, with every path confined to the context root.
