"""Training-side code used inside torchtune jobs: the dataset component and the recipe machinery.

Nothing here is imported by the compiler commands; torch and torchtune are imported lazily.
"""
