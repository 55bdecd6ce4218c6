"""The pages (plain HTML, CSS and JavaScript, no build step), shipped as package data."""
