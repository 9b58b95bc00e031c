"""The named datasets fastrft reads in the layout their authors distribute them: each name and
the layout it expects. A leaf module (no torch, no numpy): the config checks `data.source`
against these names, the CLI lists them in its help, fastrft.data.layouts reads DATASETS (image
files) and fastrft.data.readers reads IDX_DATASETS (IDX files, fastrft.data.idx).
"""

from dataclasses import dataclass

DATASETS: dict[str, str] = {
    "cub": (
        "CUB-200-2011: ROOT/images.txt ('<id> <relpath>'), ROOT/image_class_labels.txt "
        "('<id> <class id>'), ROOT/train_test_split.txt ('<id> <1=train|0=test>'), "
        "ROOT/classes.txt ('<class id> <name>'), images under ROOT/images/<relpath>; "
        "the test split is val"
    ),
    "aircraft": (
        "FGVC-Aircraft (variant level, 100 classes): ROOT/data/variants.txt (one name per line), "
        "ROOT/data/images_variant_trainval.txt and ROOT/data/images_variant_test.txt "
        "('<id> <variant name>'), images ROOT/data/images/<id>.jpg; trainval is train, "
        "test is val"
    ),
    "caltech256": (
        "Caltech-256: ROOT/256_ObjectCategories/<NNN.name>/*.jpg (257 folders with "
        "257.clutter); no official split: everything is train and the converter draws a "
        "seeded val_fraction split"
    ),
    "imagenette": (
        "Imagenette: ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG (an ImageFolder with "
        "its own split); class names are the wnids"
    ),
    "cars": (
        "Stanford Cars (196 classes), as its authors ship it: ROOT/cars_train/*.jpg, "
        "ROOT/cars_test/*.jpg, ROOT/devkit/cars_meta.mat (class_names), "
        "ROOT/devkit/cars_train_annos.mat and the test labels "
        "cars_test_annos_withlabels.mat in ROOT or ROOT/devkit (struct 'annotations' with "
        "fields fname and class, 1-based; the devkit's cars_test_annos.mat has no labels); "
        "test is val. An ImageFolder re-packaging is read by --source imagefolder "
        "(ROOT/train/<class>/ and ROOT/test/<class>/ or ROOT/val/<class>/)"
    ),
    "dogs": (
        "Stanford Dogs (120 classes): ROOT/Images/<wnid-breed>/*.jpg, "
        "ROOT/lists/train_list.mat and ROOT/lists/test_list.mat (or both in ROOT) with "
        "file_list (paths under Images/) and labels (1-based); class names are the "
        "<wnid-breed> folders; test is val"
    ),
}


@dataclass(frozen=True)
class IdxDataset:
    """A dataset of four MNIST-style IDX files, which a system package may install."""

    layout: str
    default_root: str
    """Where its package puts the files: data.root may be left out when they are there."""
    install: str
    classes: tuple[str, ...]
    """Names by label (the IDX files hold none)."""

    @property
    def how_to_get(self) -> str:
        """What to do when the files are not there."""
        return f"install it ({self.install}) or point data.root at a folder holding its IDX files"


IDX_DATASETS: dict[str, IdxDataset] = {
    "fashion_mnist": IdxDataset(
        layout=(
            "Fashion-MNIST (10 classes, 60,000 + 10,000 grey 28x28 images): ROOT holds "
            "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
            "t10k-labels-idx1-ubyte, each plain or .gz; t10k is val; ROOT defaults to "
            "/usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist)"
        ),
        default_root="/usr/share/datasets/fashion-mnist",
        install="apt-get install dataset-fashion-mnist, on Debian or Ubuntu",
        classes=(
            "T-shirt/top",
            "Trouser",
            "Pullover",
            "Dress",
            "Coat",
            "Sandal",
            "Shirt",
            "Sneaker",
            "Bag",
            "Ankle boot",
        ),
    ),
}
