namespace Peft.Generators.Parsing;

/// <summary>Metadata and display names the parser recognises.</summary>
internal static class KnownNames
{
    public const string LoRAAttribute = "Peft.LoRAAttribute";
    public const string KroneckerAttribute = "Peft.KroneckerAttribute";
    public const string PromptTuneAttribute = "Peft.PromptTuneAttribute";
    public const string FreezeAttribute = "Peft.FreezeAttribute";
    public const string TrainableAttribute = "Peft.TrainableAttribute";
    public const string AdaptableAttribute = "Peft.AdaptableAttribute";

    /// <summary>Every attribute that makes a class take part in generation.</summary>
    public static readonly string[] AllAttributes = { LoRAAttribute, KroneckerAttribute, PromptTuneAttribute, FreezeAttribute, TrainableAttribute, AdaptableAttribute };

    public const string Module = "TorchSharp.torch.nn.Module";
    public const string Linear = "TorchSharp.Modules.Linear";
    public const string ModuleOfTensorToTensor = "TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>";
    public const string Parameter = "TorchSharp.Modules.Parameter";
    public const string Tensor = "TorchSharp.torch.Tensor";
    public const string NnStaticClass = "TorchSharp.torch.nn";

    public const string DefaultAdapterName = "default";
    public const string InitializeMethodName = "InitializePeft";
}
