"""Seeing inside and measuring: gradcheck, diagnose (gradient decay), bench, plot."""
