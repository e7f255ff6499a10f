//! Safe tar reading: turns a layer or an ADDed archive into entries confined to their root.
