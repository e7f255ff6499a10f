//! COPY and ADD: sources from the context or another stage, mapped onto the destination as Docker does.
