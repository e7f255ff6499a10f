//! The build planner: stages, ARG/ENV scoping, and typed instructions.
