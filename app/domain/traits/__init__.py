"""Computed traits, as pure functions of a profile's stats and history: RFM scores and segment
(`rfm`), engagement rates (`engagement`), preferred categories (`preferences`), the predicted next
order (`next_order`), and the co-purchase table recommendations use (`co_purchase`)."""
