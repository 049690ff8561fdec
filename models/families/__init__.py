"""Every generative family; importing this package registers them all."""
from models.families.ar import AutoRegressive
from models.families.flow import RealNVP
from models.families.gan import ConditionalGAN
from models.families.markov import MarkovChain
from models.families.rnn import RecurrentLM
from models.families.transformer import CharTransformer
from models.families.vae import ConvVAE

__all__ = ["AutoRegressive", "CharTransformer", "ConditionalGAN", "ConvVAE", "MarkovChain", "RealNVP", "RecurrentLM"]
