"""Data: the dataset registry (dataset_info.json), converting and checking datasets, documents to corpora, distilling
question-answer pairs with a teacher model, dataset statistics."""
