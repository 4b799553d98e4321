namespace Peft.Generators.Parsing;

/// <summary>Metadata and display names the parser recognises.</summary>
internal static class KnownNames
{
    public const string FreezeAttribute = "Peft.FreezeAttribute";
    public const string TrainableAttribute = "Peft.TrainableAttribute";
    public const string AdaptableAttribute = "Peft.AdaptableAttribute";

    /// <summary>Declares a sibling projection group; not a generation trigger (it means nothing without an adapter).</summary>
    public const string FuseProjectionsAttribute = "Peft.FuseProjectionsAttribute";

    /// <summary>The interface the generator implements for a class with sibling projection groups (simple name as written in code).</summary>
    public const string SiblingProjectionsInterface = "ISiblingProjections";

    /// <summary>Every attribute that makes a class take part in generation: each method's (<see cref="Methods.MethodCatalogue"/>)
    /// and the three structural ones.</summary>
    public static readonly string[] AllAttributes = System.Linq.Enumerable.ToArray(System.Linq.Enumerable.Concat(
        System.Linq.Enumerable.Select(Methods.MethodCatalogue.All, m => m.AttributeMetadataName),
        new[] { FreezeAttribute, TrainableAttribute, AdaptableAttribute }));

    public const string Module = "TorchSharp.torch.nn.Module";
    public const string Linear = "TorchSharp.Modules.Linear";
    public const string LayerNorm = "TorchSharp.Modules.LayerNorm";
    public const string ModuleOfTensorToTensor = "TorchSharp.torch.nn.Module<TorchSharp.torch.Tensor, TorchSharp.torch.Tensor>";
    public const string Parameter = "TorchSharp.Modules.Parameter";
    public const string Tensor = "TorchSharp.torch.Tensor";
    public const string NnStaticClass = "TorchSharp.torch.nn";

    public const string DefaultAdapterName = "default";
    public const string InitializeMethodName = "InitializePeft";
}
