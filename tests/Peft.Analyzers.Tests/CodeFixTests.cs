using Microsoft.CodeAnalysis.Testing;
using Peft.Analyzers.Tests.Infrastructure;
using Peft.CodeFixes;

namespace Peft.Analyzers.Tests;

/// <summary>The code fixes for PEFT0007 (make partial), PEFT0012 (remove readonly / add a setter) and PEFT0013 (call InitializePeft()).</summary>
public class CodeFixTests
{
    [Fact]
    public Task MakePartial_AddsPartialToTheClass()
        => PeftCodeFixTest<MakePartialCodeFixProvider>.VerifyAsync(
            """
            public sealed class {|PEFT0007:Attention|} : Module<Tensor, Tensor>
            {
                [Trainable] private Module<Tensor, Tensor> head = Linear(64, 2);

                public Attention() : base(nameof(Attention)) { }

                public override Tensor forward(Tensor x) => head.call(x);
            }
            """,
            """
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [Trainable] private Module<Tensor, Tensor> head = Linear(64, 2);

                public Attention() : base(nameof(Attention)) { }

                public override Tensor forward(Tensor x) => head.call(x);
            }
            """);

    [Fact]
    public Task MakePartial_AddsPartialToEveryContainingTypeThatLacksIt()
        => PeftCodeFixTest<MakePartialCodeFixProvider>.VerifyAsync(
            """
            namespace Models
            {
                public static class Blocks
                {
                    internal partial class Layers
                    {
                        class {|PEFT0007:Mlp|} : Module<Tensor, Tensor>
                        {
                            [Freeze] private Module<Tensor, Tensor> fc = Linear(64, 64);

                            public Mlp() : base(nameof(Mlp)) { }

                            public override Tensor forward(Tensor x) => fc.call(x);
                        }
                    }
                }
            }
            """,
            """
            namespace Models
            {
                public static partial class Blocks
                {
                    internal partial class Layers
                    {
                        partial class Mlp : Module<Tensor, Tensor>
                        {
                            [Freeze] private Module<Tensor, Tensor> fc = Linear(64, 64);

                            public Mlp() : base(nameof(Mlp)) { }

                            public override Tensor forward(Tensor x) => fc.call(x);
                        }
                    }
                }
            }
            """);

    [Fact]
    public Task MakePartial_ThenPEFT0013AppearsForAdaptersUntilInitializePeftIsCalled()
        => PeftCodeFixTest<MakePartialCodeFixProvider>.VerifyAsync(
            """
            public class {|PEFT0007:Attention|} : Module<Tensor, Tensor>
            {
                [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);

                public Attention() : base(nameof(Attention)) { }

                public override Tensor forward(Tensor x) => q_proj.call(x);
            }
            """,
            """
            public partial class {|PEFT0013:Attention|} : Module<Tensor, Tensor>
            {
                [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);

                public Attention() : base(nameof(Attention)) { }

                public override Tensor forward(Tensor x) => q_proj.call(x);
            }
            """);

    [Fact]
    public Task RemoveReadonly_OnAField()
        => PeftCodeFixTest<MakeWritableCodeFixProvider>.VerifyAsync(
            PeftTestSetup.Module("""
                    // The query projection.
                    [LoRA(8)] private readonly Module<Tensor, Tensor> {|PEFT0012:q_proj|} = Linear(64, 64);
                    [LoRA(8)]
                    readonly Module<Tensor, Tensor> {|PEFT0012:v_proj|} = Linear(64, 64);
                """),
            PeftTestSetup.Module("""
                    // The query projection.
                    [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);
                    [LoRA(8)]
                    Module<Tensor, Tensor> v_proj = Linear(64, 64);
                """));

    [Fact]
    public Task AddSetter_OnGetOnlyAndInitOnlyAutoProperties()
        => PeftCodeFixTest<MakeWritableCodeFixProvider>.VerifyAsync(
            PeftTestSetup.Module("""
                    [LoRA(8)] public Module<Tensor, Tensor> {|PEFT0012:Q|} { get; } = Linear(64, 64);
                    [LoRA(8)] public Module<Tensor, Tensor> {|PEFT0012:V|} { get; init; } = Linear(64, 64);
                """),
            PeftTestSetup.Module("""
                    [LoRA(8)] public Module<Tensor, Tensor> Q { get; set; } = Linear(64, 64);
                    [LoRA(8)] public Module<Tensor, Tensor> V { get; set; } = Linear(64, 64);
                """));

    [Fact]
    public Task AddInitializePeftCall_ToEveryConstructorLackingIt()
        => PeftCodeFixTest<AddInitializePeftCallCodeFixProvider>.VerifyAsync(
            """
            public sealed partial class {|PEFT0013:Attention|} : Module<Tensor, Tensor>
            {
                [LoRA(8)] private Module<Tensor, Tensor> q_proj;

                public Attention() : base(nameof(Attention))
                {
                    q_proj = Linear(64, 64);
                }

                public Attention(int seed) : this() { }

                public Attention(long dim) : base(nameof(Attention)) => q_proj = Linear(dim, dim);

                public Attention(string name) : base(name)
                {
                    q_proj = Linear(64, 64);
                    InitializePeft();
                }

                public override Tensor forward(Tensor x) => q_proj.call(x);
            }
            """,
            """
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [LoRA(8)] private Module<Tensor, Tensor> q_proj;

                public Attention() : base(nameof(Attention))
                {
                    q_proj = Linear(64, 64);
                    InitializePeft();
                }

                public Attention(int seed) : this() { }

                public Attention(long dim) : base(nameof(Attention))
                {
                    q_proj = Linear(dim, dim);
                    InitializePeft();
                }

                public Attention(string name) : base(name)
                {
                    q_proj = Linear(64, 64);
                    InitializePeft();
                }

                public override Tensor forward(Tensor x) => q_proj.call(x);
            }
            """);

    [Fact]
    public Task AddInitializePeftCall_ToAnEmptyConstructor()
        => PeftCodeFixTest<AddInitializePeftCallCodeFixProvider>.VerifyAsync(
            """
            public sealed partial class {|PEFT0013:Attention|} : Module<Tensor, Tensor>
            {
                [Kronecker(4)] private Module<Tensor, Tensor> v_proj = Linear(64, 64);

                public Attention() : base(nameof(Attention)) { }

                public override Tensor forward(Tensor x) => v_proj.call(x);
            }
            """,
            """
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [Kronecker(4)] private Module<Tensor, Tensor> v_proj = Linear(64, 64);

                public Attention() : base(nameof(Attention))
                {
                    InitializePeft();
                }

                public override Tensor forward(Tensor x) => v_proj.call(x);
            }
            """);

    [Fact]
    public Task MakePartial_TwoNestedModulesInOneNonPartialContainer_FixAllMakesEverythingPartial()
        => PeftCodeFixTest<MakePartialCodeFixProvider>.VerifyAsync(
            """
            public static class Blocks
            {
                public sealed class {|PEFT0007:Mlp|} : Module<Tensor, Tensor>
                {
                    [Trainable] private Module<Tensor, Tensor> fc = Linear(64, 64);

                    public Mlp() : base(nameof(Mlp)) { }

                    public override Tensor forward(Tensor x) => fc.call(x);
                }

                public sealed class {|PEFT0007:Head|} : Module<Tensor, Tensor>
                {
                    [Trainable] private Module<Tensor, Tensor> fc = Linear(64, 2);

                    public Head() : base(nameof(Head)) { }

                    public override Tensor forward(Tensor x) => fc.call(x);
                }
            }
            """,
            """
            public static partial class Blocks
            {
                public sealed partial class Mlp : Module<Tensor, Tensor>
                {
                    [Trainable] private Module<Tensor, Tensor> fc = Linear(64, 64);

                    public Mlp() : base(nameof(Mlp)) { }

                    public override Tensor forward(Tensor x) => fc.call(x);
                }

                public sealed partial class Head : Module<Tensor, Tensor>
                {
                    [Trainable] private Module<Tensor, Tensor> fc = Linear(64, 2);

                    public Head() : base(nameof(Head)) { }

                    public override Tensor forward(Tensor x) => fc.call(x);
                }
            }
            """);

    [Fact]
    public async Task AddInitializePeftCall_InConstructorsOfEveryPartialDeclaration()
    {
        var test = new PeftCodeFixTest<AddInitializePeftCallCodeFixProvider>();
        test.TestState.Sources.Add(("/0/Attention.cs", PeftTestSetup.Usings + """
            public sealed partial class {|PEFT0013:Attention|} : Module<Tensor, Tensor>
            {
                [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);

                public Attention() : base(nameof(Attention)) { }

                public override Tensor forward(Tensor x) => q_proj.call(x);
            }
            """));
        test.TestState.Sources.Add(("/0/Attention.Constructors.cs", PeftTestSetup.Usings + """
            public sealed partial class Attention
            {
                public Attention(string name) : base(name) { }
            }
            """));
        test.FixedState.Sources.Add(("/0/Attention.cs", PeftTestSetup.Usings + """
            public sealed partial class Attention : Module<Tensor, Tensor>
            {
                [LoRA(8)] private Module<Tensor, Tensor> q_proj = Linear(64, 64);

                public Attention() : base(nameof(Attention))
                {
                    InitializePeft();
                }

                public override Tensor forward(Tensor x) => q_proj.call(x);
            }
            """));
        test.FixedState.Sources.Add(("/0/Attention.Constructors.cs", PeftTestSetup.Usings + """
            public sealed partial class Attention
            {
                public Attention(string name) : base(name)
                {
                    InitializePeft();
                }
            }
            """));
        await test.RunAsync();
    }
}
