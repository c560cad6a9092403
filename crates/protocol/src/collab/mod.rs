//! Collaborative key establishment (paper 000): client A, proxies Pi, trusted entity T, server B.
