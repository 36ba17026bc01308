"""embedrt.export.train: fine-tune a sentence-transformers model by its model card's recipe
(extra 'train'), checking label orientation first.

    from embedrt.export.train.pairs import read_pairs
    from embedrt.export.train.trainer import train_model
    train_model(read_pairs("pairs.jsonl"), "models/my-ft")

pairs.py and snli.py bring the data; orientation.py checks which way the labels point;
recipe.py trains; evaluation.py scores before and after; model_card.py writes the card;
trainer.py ties them together.
"""
