//! The OCI distribution protocol: references, authentication, pulling base images into the store and pushing images from it.
