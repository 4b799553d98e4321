using System.Reflection;
using Peft.Generators.Methods;
using Peft.Generators.Model;

namespace Peft.Conformance.Tests;

/// <summary>
/// The generator's catalogue (<see cref="MethodCatalogue"/>), the runtime's registry (<see cref="PeftMethods"/>) and the
/// attributes agree: same methods, attribute and options types, layer kinds, and every argument the generator reads exists on
/// the attribute and on the options record, with the same default on all three.
/// </summary>
public sealed class CatalogueAgreementTests
{
    public static IEnumerable<object[]> MethodNames => PeftMethods.All.Select(m => new object[] { m.Name });

    [Fact]
    public void BothSidesRegisterTheSameMethods()
        => Assert.Equal(PeftMethods.All.Select(m => m.Name).Order(), MethodCatalogue.All.Select(s => s.Name).Order());

    [Theory]
    [MemberData(nameof(MethodNames))]
    public void AttributeOptionsAndLayerKindsAgree(string name)
    {
        var method = PeftMethods.ByName(name);
        var spec = MethodCatalogue.Get(name);
        Assert.Equal(method.AttributeType.FullName, spec.AttributeMetadataName);
        Assert.Equal(name + "Attribute", method.AttributeType.Name);
        Assert.Equal("global::" + method.OptionsType.FullName, spec.OptionsType);
        Assert.Equal((int)method.LayerKinds, (int)spec.LayerKinds); // Linear = 1, Embedding = 2, Norm = 4 on both sides
        Assert.True(typeof(PeftAdapterOptions).IsAssignableFrom(method.OptionsType));
        Assert.NotNull(method.AttributeType.GetProperty("Name"));
        Assert.Same(method, ((PeftAdapterOptions)Activator.CreateInstance(method.OptionsType, method.OptionsType.GetConstructors()[0].GetParameters().Select(p => p.DefaultValue).ToArray())!).Method);
    }

    [Theory]
    [MemberData(nameof(MethodNames))]
    public void EveryArgumentExistsWithTheSameDefaultOnTheAttributeAndTheOptions(string name)
    {
        var method = PeftMethods.ByName(name);
        var spec = MethodCatalogue.Get(name);
        var ctor = method.AttributeType.GetConstructors().Single();
        var defaultAttribute = ctor.Invoke(ctor.GetParameters().Select(p => p.DefaultValue).ToArray());
        var options = method.OptionsType.GetConstructors().OrderByDescending(c => c.GetParameters().Length).First().GetParameters();
        foreach (var argument in spec.Arguments)
        {
            object? attributeDefault;
            var parameter = ctor.GetParameters().SingleOrDefault(p => p.Name == argument.Name);
            if (parameter is not null)
            {
                attributeDefault = parameter.DefaultValue;
            }
            else
            {
                var property = method.AttributeType.GetProperty(argument.Name, BindingFlags.Public | BindingFlags.Instance);
                Assert.True(property is { CanWrite: true }, $"[{name}] has no constructor parameter or settable property '{argument.Name}'");
                attributeDefault = property!.GetValue(defaultAttribute);
            }

            var option = options.SingleOrDefault(p => p.Name == argument.OptionName);
            Assert.True(option is not null, $"{method.OptionsType.Name} has no parameter '{argument.OptionName}'");
            object? expected = argument.Kind switch
            {
                ArgumentKind.Int => (int)argument.DefaultInteger,
                ArgumentKind.Double => argument.DefaultNumber,
                ArgumentKind.Bool => argument.DefaultInteger != 0,
                ArgumentKind.String => argument.DefaultText,
                _ => (int)argument.DefaultInteger,
            };
            Assert.Equal(expected, Normalize(attributeDefault));
            Assert.Equal(expected, Normalize(option!.DefaultValue));
        }
    }

    private static object? Normalize(object? value) => value is Enum e ? Convert.ToInt32(e, System.Globalization.CultureInfo.InvariantCulture) : value;
}
