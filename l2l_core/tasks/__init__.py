"""What is optimised: quadratic and MLP task families (optimizees), and the image data sets behind them."""
