//! CNN4 (conv3x3-BN-ReLU-maxpool x4). (in progress)
