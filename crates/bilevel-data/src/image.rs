//! PNG / JPEG decoding to float buffers, resizing. (in progress)
